package io.streamscore;

/** A model, runtime or ticket used after it was closed (or never opened). */
public class InvalidHandleException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public InvalidHandleException(String message) {
        super(message);
    }
}
