package io.streamscore;

/** A configuration was refused: an option, a feature spec, a schema change, an unknown version. */
public class ConfigException extends StreamscoreException {
    private static final long serialVersionUID = 1L;

    /** An error with the library's message. */
    public ConfigException(String message) {
        super(message);
    }
}
