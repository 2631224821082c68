package io.streamscore;

/** The event's deadline passed while queued, or it was shed from a full queue. */
public class ExpiredException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public ExpiredException(String message) {
        super(message);
    }
}
