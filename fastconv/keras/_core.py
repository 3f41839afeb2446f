"""How the face finds the core's pieces: by name, at the moment it needs them, so that a core without a
piece still imports the face and only the Keras feature that needs it raises ``NotImplementedError``."""
import inspect

__all__ = ["accepts", "core_class", "unsupported"]


def accepts(function, parameter):
    """Whether ``function`` (a class or callable) takes a keyword argument ``parameter``."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return parameter in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def core_class(module, name, feature):
    """``module.name`` (a class of the core), or NotImplementedError saying ``feature`` needs it."""
    cls = getattr(module, name, None)
    if cls is None:
        raise NotImplementedError(f"{feature} is not supported by this fastconv: its core has no "
                                  f"{module.__name__}.{name}")
    return cls


def unsupported(owner, argument, value, supported):
    """NotImplementedError for a Keras argument value fastconv lacks, naming what is supported."""
    return NotImplementedError(f"{owner}: {argument}={value!r} is not supported by fastconv ({supported})")


def check_defaults(owner, given, defaults):
    """Raise NotImplementedError for the first argument of ``given`` that differs from its Keras default."""
    for key, default in defaults.items():
        value = given.get(key, default)
        if value is not default and value != default:
            raise unsupported(owner, key, value, f"only the default {default!r}")
