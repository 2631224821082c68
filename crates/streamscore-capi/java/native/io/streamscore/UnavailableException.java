package io.streamscore;

/** A backend is not available here or failed. */
public class UnavailableException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public UnavailableException(String message) {
        super(message);
    }
}
