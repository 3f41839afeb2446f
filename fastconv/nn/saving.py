"""Save a :class:`~fastconv.nn.model.Sequential` to one ``.npz`` file and load it back, refusing bad files.

The file is an uncompressed NumPy ``.npz`` (a zip of ``.npy`` members), read without pickle:

- ``config``: the model's ``get_config()`` as JSON (a 0-d unicode array);
- ``params``: the flat parameter buffer, 1-D, of the model's dtype;
- ``state``: the flat non-trainable state buffer (BatchNormalization's running statistics), 1-D, of the
  model's dtype; only when the model has state (files of models without state, older ones included,
  have none);
- ``rng_state``: the model RNG's bit-generator state as JSON; ``layer_rng/I`` the same for layer I's RNG
  (Dropout);
- ``optimizer/KEY``: the optimizer's ``state()`` (``iterations`` and its buffers).

:func:`load_model` checks the config and every member's declared shape and size against what the config
describes *before* it allocates anything, so a crafted file cannot ask for more memory than its own size.
"""
import errno
import hashlib
import io
import json
import math
import os
import stat
import zipfile

import numpy as np

from ..datasets import read_npy_header
from . import initializers, losses, optimizers
from . import layers as layers_mod

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent saves to one path are then unguarded
    fcntl = None

__all__ = ["save_model", "load_model"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_TEMP_SUFFIX = ".fastconv-tmp"
_CONFIG_KEYS = ("dtype", "seed", "input_shape", "layers", "loss", "metrics", "optimizer")
_MAX_JSON_BYTES = 1 << 24  # a config or RNG state is a few KiB; 16 MiB is far past any real one


# ------------------------------------------------------------------------------------------------ save

def save_model(model, path):
    """Write a built model's config, weights, RNG states and optimizer state to ``path`` (an ``.npz``).

    The write is atomic and durable: the data goes to one temp file beside the target
    (``.NAME.fastconv-tmp``), is fsynced, replaces ``path`` with :func:`os.replace`, and the directory is
    fsynced.  A save killed midway leaves at most that one temp file, which the next save of the same path
    removes.  Concurrent saves of one path take turns (an advisory lock on the temp file).  A new file gets
    the mode ``open()`` would give it (0o666 less the umask, as :func:`numpy.savez`); an existing file keeps
    its mode.

    Parameters
    ----------
    model : a built :class:`~fastconv.nn.model.Sequential`.
    path : str or path-like; written as given (no ``.npz`` is appended).

    Examples
    --------
    >>> save_model(model, "model.npz")          # doctest: +SKIP
    >>> load_model("model.npz").predict(x)      # doctest: +SKIP
    """
    if not model.built:
        raise RuntimeError("cannot save an unbuilt model")
    path = os.fspath(path)
    arrays = _model_arrays(model)
    tmp = _temp_path(path)
    fd = _create_locked(tmp)
    try:
        try:
            _keep_mode(path, fd)
            with os.fdopen(fd, "wb", closefd=False) as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            _remove(tmp)
            raise
    finally:
        os.close(fd)  # releases the lock
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def _model_arrays(model):
    """The members of a model file, by key."""
    arrays = {"config": _json_array(model.get_config()), "params": np.ascontiguousarray(model.params),
              "rng_state": _json_array(model.rng.bit_generator.state)}
    if model.state.size:
        arrays["state"] = np.ascontiguousarray(model.state)
    for i in _layers_with_rng(model):
        arrays[f"layer_rng/{i}"] = _json_array(model.layers[i].rng.bit_generator.state)
    if model.optimizer is not None:
        for key, value in model.optimizer.state().items():
            if value is not None:
                arrays["optimizer/" + key] = np.asarray(value)
    return arrays


def _json_array(value):
    """``value`` as JSON in a 0-d unicode array; NumPy scalars (``learning_rate=np.float32(1e-3)``) as numbers."""
    def plain(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"cannot save {obj!r} ({type(obj).__name__}) in a model file's JSON config")
    return np.array(json.dumps(value, default=plain))


def _layers_with_rng(model):
    """Indices of the layers that own a random generator (Dropout)."""
    return [i for i, layer in enumerate(model.layers) if isinstance(getattr(layer, "rng", None), np.random.Generator)]


def _temp_path(path):
    """The one temp file of ``path``: ``.NAME.fastconv-tmp`` in its directory (a hash for very long names)."""
    directory, name = os.path.split(os.path.abspath(path))
    if len(os.fsencode(name)) > 200:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return os.path.join(directory, "." + name + _TEMP_SUFFIX)


def _create_locked(tmp):
    """Create ``tmp`` afresh and lock it; return its descriptor.

    Whoever holds the lock on the file now at ``tmp`` alone writes, renames or removes it, so after taking
    the lock each saver checks that ``tmp`` is still the file it locked.  An unlocked leftover (from a killed
    save) is removed under its lock and created again, so it never outlives the next save.
    """
    while True:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
            fresh = True
        except FileExistsError:
            try:
                fd = os.open(tmp, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
            except FileNotFoundError:
                continue  # its owner renamed or removed it meanwhile
            except OSError as exc:
                raise OSError(exc.errno, f"cannot save: {tmp!r} exists and is not a fastconv temp file") from exc
            fresh = False
        keep = False
        try:
            _lock(fd)
            if _is_file_at(fd, tmp):
                if fresh:
                    keep = True
                    return fd
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FileExistsError(errno.EEXIST, f"cannot save: {tmp!r} exists and is not a regular file")
                os.unlink(tmp)  # a killed save's leftover
        finally:
            if not keep:
                os.close(fd)


def _lock(fd):
    """Take an exclusive advisory lock on ``fd`` (waits for a concurrent save); a no-op where unsupported."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
            raise


def _is_file_at(fd, path):
    """Whether ``path`` still names the open file ``fd``."""
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _keep_mode(path, fd):
    """Give the new file an existing target's permission bits (``np.savez`` rewrites a file in place)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_directory(directory):
    """Make the rename durable; a no-op where directories cannot be opened or synced."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ load

def load_model(path):
    """Rebuild a model saved by :func:`save_model`; its predictions are bit-identical to the saved model's.

    The weights, the RNG states (model and Dropout layers) and the optimizer state are restored, so training
    continues exactly as it would have.

    Raises
    ------
    ValueError
        naming the file and the problem, for anything that is not an intact fastconv model file: a missing,
        empty, truncated or corrupted file, another kind of file, an edited config, or members whose shape,
        dtype or size disagree with the config.  Nothing is allocated before the config and the declared
        sizes agree.
    """
    from .model import Sequential  # here, not at the top: model.py may import this module

    path = os.fspath(path)
    with _NpzReader(path) as reader:
        config = _check_config(reader, reader.json("config"))
        try:
            model_layers = [layers_mod.layer_from_config(entry["class"], entry["config"]) for entry in config["layers"]]
        except (ValueError, TypeError) as exc:
            raise reader.error(f"its config holds an invalid layer: {exc}") from exc
        expected = _count_params(reader, model_layers, config["input_shape"])
        expected_state = sum(math.prod(shape) for layer in model_layers for _, shape, _ in layer.state_specs)
        params = reader.array("params")
        if params.dtype.kind != "f" or params.dtype.itemsize != np.dtype(config["dtype"]).itemsize:
            raise reader.error(f"params has dtype {params.dtype}; the config says {config['dtype']}")
        if params.shape != (expected,):
            raise reader.error(f"params has shape {params.shape}; the config's layers have {expected:,} parameters")
        state = None
        if expected_state:  # read before the model is built: the file's own size bounds what it allocates
            state = reader.array("state")
            if state.dtype.kind != "f" or state.dtype.itemsize != np.dtype(config["dtype"]).itemsize:
                raise reader.error(f"state has dtype {state.dtype}; the config says {config['dtype']}")
            if state.shape != (expected_state,):
                raise reader.error(f"state has shape {state.shape}; the config's layers have {expected_state:,} "
                                   "state values")
        opt = config["optimizer"]
        optimizer_class = None if opt is None else _optimizer_class(reader, opt["class"])
        loss = None if optimizer_class is None else _loss(reader, config)
        try:
            model = Sequential(model_layers, dtype=config["dtype"], seed=config["seed"])
            if optimizer_class is not None:
                model.compile(optimizer_class.from_config(opt["config"]), loss, config["metrics"])
            model.build(tuple(config["input_shape"]))
        except (ValueError, TypeError) as exc:
            raise reader.error(f"its config does not describe a valid model: {exc}") from exc
        if model.count_params() != expected:
            raise reader.error(f"the model built from its config has {model.count_params():,} parameters, "
                               f"not the {expected:,} its layers describe")
        model.params[...] = params
        if expected_state:
            if model.state.size != expected_state:
                raise reader.error(f"the model built from its config has {model.state.size:,} state values, "
                                   f"not the {expected_state:,} its layers describe")
            model.state[...] = state
        _restore_rng(reader, "rng_state", model.rng)
        rng_layers = _layers_with_rng(model)
        reader.expect_keys("layer_rng/", [str(i) for i in rng_layers])
        for i in rng_layers:
            _restore_rng(reader, f"layer_rng/{i}", model.layers[i].rng)
        _restore_optimizer(reader, model)
        reader.reject_unread()
    return model


class _NpzReader:
    """An ``.npz`` file read member by member, each checked against the file's real size before it is read."""

    def __init__(self, path):
        self.path = path
        self._read = set()
        try:
            self._file = open(path, "rb")
        except OSError as exc:
            raise self.error(exc.strerror or str(exc)) from exc
        try:
            self._open_zip()
        except BaseException:
            self._file.close()
            raise

    def error(self, problem):
        return ValueError(f"cannot read a fastconv model from {self.path!r}: {problem}")

    def _open_zip(self):
        self.size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(6)
        if not head:
            raise self.error("the file is empty")
        if head.startswith(b"\x93NUMPY"):
            raise self.error("it is a single .npy array, not a model file (.npz)")
        if not head.startswith(b"PK"):
            raise self.error("it is not an .npz (zip) file")
        self._file.seek(0)
        try:
            self._zip = zipfile.ZipFile(self._file)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise self.error(f"it is a truncated or corrupted zip file ({exc})") from exc
        self.members = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in self.members:
                raise self.error(f"it holds {info.filename!r} twice")
            self.members[key] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()
        self._file.close()

    def keys(self, prefix):
        """The member keys that start with ``prefix``, without it."""
        return sorted(k[len(prefix):] for k in self.members if k.startswith(prefix))

    def expect_keys(self, prefix, expected):
        found = self.keys(prefix)
        if sorted(expected) != found:
            raise self.error(f"it holds {prefix}* members {found}; the model needs {sorted(expected)}")

    def reject_unread(self):
        extra = sorted(set(self.members) - self._read)
        if extra:
            raise self.error(f"it holds members a fastconv model file does not have: {extra}")

    def array(self, key):
        """Member ``key`` as an array (no pickle), after checking its header against its stored size."""
        info = self.members.get(key)
        if info is None:
            raise self.error(f"it has no {key!r} member")
        self._read.add(key)
        if not info.filename.endswith(".npy"):
            raise self.error(f"member {info.filename!r} is not an .npy array")
        if info.flag_bits & 0x1:
            raise self.error(f"member {info.filename!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise self.error(f"member {info.filename!r} is compressed; model files are written uncompressed")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > self.size:
            raise self.error(f"member {info.filename!r} claims {info.file_size:,} bytes, past the end of the "
                             f"{self.size:,}-byte file (truncated?)")
        try:
            with self._zip.open(info) as member:
                raw = member.read()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise self.error(f"member {info.filename!r} is truncated or corrupted ({exc})") from exc
        if len(raw) != info.file_size:
            raise self.error(f"member {info.filename!r} is truncated")
        return self._parse_npy(info.filename, raw)

    def _parse_npy(self, name, raw):
        stream = io.BytesIO(raw)
        try:
            shape, fortran_order, dtype = read_npy_header(stream)
        except (ValueError, EOFError) as exc:
            raise self.error(f"member {name!r} is not a valid .npy array ({exc})") from exc
        if dtype.hasobject:
            raise self.error(f"member {name!r} holds Python objects (pickled data), which fastconv never loads")
        count = 1
        for n in shape:
            count *= n
        offset = stream.tell()
        if count * dtype.itemsize != len(raw) - offset:
            raise self.error(f"member {name!r} declares shape {shape} of {dtype} ({count * dtype.itemsize:,} bytes) "
                             f"but holds {len(raw) - offset:,} bytes")
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        return array.reshape(shape, order="F" if fortran_order else "C")

    def json(self, key):
        """Member ``key``, a 0-d unicode array holding JSON, decoded."""
        info = self.members.get(key)
        if info is not None and info.file_size > _MAX_JSON_BYTES:
            raise self.error(f"member {key!r} is {info.file_size:,} bytes, too large for a JSON config or state")
        value = self.array(key)
        if value.dtype.kind != "U" or value.shape != ():
            raise self.error(f"{key!r} is a {value.dtype} array of shape {value.shape}, not a JSON string")
        try:
            return json.loads(str(value[()]))
        except ValueError as exc:  # JSONDecodeError, or a number too long to convert
            raise self.error(f"{key!r} is not valid JSON ({exc})") from exc


def _check_config(reader, config):
    """The top-level structure of a saved config (layer arguments are left to the layers)."""
    if not isinstance(config, dict):
        raise reader.error(f"its config is a JSON {type(config).__name__}, not an object")
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise reader.error(f"its config lacks {', '.join(map(repr, missing))}")
    if config["dtype"] not in ("float32", "float64"):
        raise reader.error(f"its config has dtype {config['dtype']!r}; expected 'float32' or 'float64'")
    seed = config["seed"]
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise reader.error(f"its config has seed {seed!r}; expected a non-negative int or null")
    shape = config["input_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(n) and n >= 1 for n in shape):
        raise reader.error(f"its config has input_shape {shape!r}; expected a list of positive ints")
    if not isinstance(config["layers"], list):
        raise reader.error("its config's layers is not a list")
    for i, entry in enumerate(config["layers"]):
        if not (isinstance(entry, dict) and isinstance(entry.get("config"), dict)
                and entry.get("class") in layers_mod.LAYER_CLASSES):
            raise reader.error(f"its config's layer {i} is {entry!r}; expected {{'class': one of "
                               f"{sorted(layers_mod.LAYER_CLASSES)}, 'config': {{...}}}}")
        for key in ("kernel_initializer", "bias_initializer"):
            if key in entry["config"]:
                _check_initializer(reader, i, key, entry["config"][key])
    if config["loss"] is not None and not isinstance(config["loss"], str):
        raise reader.error(f"its config has loss {config['loss']!r}; expected a string or null")
    if not isinstance(config["metrics"], list) or not all(isinstance(m, str) for m in config["metrics"]):
        raise reader.error(f"its config has metrics {config['metrics']!r}; expected a list of strings")
    opt = config["optimizer"]
    if opt is not None and not (isinstance(opt, dict) and isinstance(opt.get("class"), str)
                                and isinstance(opt.get("config"), dict)):
        raise reader.error(f"its config has optimizer {opt!r}; expected {{'class': ..., 'config': {{...}}}} or null")
    return config


def _check_initializer(reader, i, key, cfg):
    cls = getattr(initializers, cfg.get("class", ""), None) if isinstance(cfg, dict) else None
    if not (isinstance(cls, type) and issubclass(cls, initializers.Initializer)
            and isinstance(cfg.get("config"), dict)):
        raise reader.error(f"its config's layer {i} has {key} {cfg!r}; expected {{'class': an Initializer "
                           "class name, 'config': {...}}")


def _loss(reader, config):
    """The saved loss: its name, with its settings (``from_logits``) where the file has them."""
    name, settings = config["loss"], config.get("loss_config") or {}
    if name not in losses.LOSSES or not isinstance(settings, dict):
        raise reader.error(f"its config does not describe a valid model: loss {name!r} with settings "
                           f"{settings!r} (valid losses: {', '.join(sorted(losses.LOSSES))})")
    try:
        return losses.LOSSES[name](**settings)
    except (TypeError, ValueError) as exc:
        raise reader.error(f"its config does not describe a valid model: loss {name!r}: {exc}") from exc


def _optimizer_class(reader, name):
    cls = getattr(optimizers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
        raise reader.error(f"its config names optimizer class {name!r}, which fastconv.nn.optimizers does not have")
    return cls


def _restore_rng(reader, key, generator):
    state = reader.json(key)
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise reader.error(f"{key!r} is not a valid {type(generator.bit_generator).__name__} state ({exc!r})") from exc


def _restore_optimizer(reader, model):
    if model.optimizer is None:
        reader.expect_keys("optimizer/", [])
        return
    expected = {k: v for k, v in model.optimizer.state().items() if v is not None}
    reader.expect_keys("optimizer/", list(expected))
    state = {}
    for key, current in expected.items():
        value = reader.array("optimizer/" + key)
        if isinstance(current, np.ndarray):
            if (value.dtype.kind != "f" or value.dtype.itemsize != current.dtype.itemsize
                    or value.shape != current.shape):
                raise reader.error(f"optimizer/{key} is a {value.dtype} array of shape {value.shape}; the model "
                                   f"needs {current.dtype} of shape {current.shape}")
            state[key] = value.astype(current.dtype)
        else:
            if value.shape != () or value.dtype.kind not in "iu" or value < 0:
                raise reader.error(f"optimizer/{key} is {value!r}; expected a non-negative integer")
            state[key] = int(value)
    model.optimizer.set_state(state)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _count_params(reader, model_layers, input_shape):
    """The number of parameters the layers have on ``input_shape``: each layer's ``build`` declares its
    parameter shapes without allocating them, so a crafted config costs no memory."""
    shape, total = tuple(input_shape), 0
    for i, layer in enumerate(model_layers):
        try:
            shape = layer.build(shape)
        except (ValueError, TypeError) as exc:
            raise reader.error(f"its config's layer {i} ({type(layer).__name__}) does not fit its input "
                               f"(its window or size): {exc}") from exc
        total += layer.count_params()
    return total
