package io.streamscore;

/** A model file could not be read, parsed or validated. */
public class ModelException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public ModelException(String message) {
        super(message);
    }
}
