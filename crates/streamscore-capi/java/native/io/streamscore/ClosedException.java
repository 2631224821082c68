package io.streamscore;

/** The runtime is shut down. */
public class ClosedException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public ClosedException(String message) {
        super(message);
    }
}
