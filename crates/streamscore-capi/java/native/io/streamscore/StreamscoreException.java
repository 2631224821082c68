package io.streamscore;

/** Every error streamscore raises; the subclasses mirror the C ABI's status codes. */
public class StreamscoreException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public StreamscoreException(String message) {
        super(message);
    }
}
