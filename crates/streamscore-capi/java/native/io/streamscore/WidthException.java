package io.streamscore;

/** Rows of the wrong width for the model or runtime. */
public class WidthException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public WidthException(String message) {
        super(message);
    }
}
