"""Error types shared by the core: bad input, and send failures classified at the transport edge."""


class InputError(Exception):
    """Input a person gave us is wrong; the message names the thing and says what is wrong."""


class NotFoundError(InputError):
    """A named thing (comparison, subscriber, edition) does not exist."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the environment variable."""


class SchemaOutOfDateError(Exception):
    """The database is not at the schema this code expects."""


class TransientSendError(Exception):
    """The provider could not take the message now (throttled, timeout); retry later."""


class PermanentSendError(Exception):
    """The provider refused this one message for good (bad address, rejected content)."""


class AccountBlockedError(Exception):
    """The provider refuses every message (account paused, credentials wrong): stop sending."""
