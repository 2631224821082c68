package io.streamscore;

/** The runtime's queue is full; the event was not taken, submit it again later. */
public class QueueFullException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public QueueFullException(String message) {
        super(message);
    }
}
