package io.streamscore;

/** An input was refused: a non-finite value under reject, a gate, a bad argument or buffer. */
public class InputException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public InputException(String message) {
        super(message);
    }
}
