"""save_model / load_model: round trips, and every kind of bad file refused with a ValueError naming it."""
import io
import json
import os
import stat
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import Sequential, layers, optimizers
from fastconv.nn.saving import load_model, save_model


def _small_model(seed=0):
    """Conv -> pool -> dropout -> dense, trained one step with Adam (so every kind of member is present)."""
    model = Sequential([layers.Conv2D(2, 3, activation="relu"), layers.MaxPool2D(2), layers.Dropout(0.25),
                        layers.Flatten(), layers.Dense(3, activation="softmax")], dtype="float64", seed=seed)
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(seed)
    model.fit(rng.random((4, 1, 6, 6)), rng.integers(0, 3, 4), batch_size=2, verbose=0)
    return model


@pytest.fixture
def saved(tmp_path):
    """(model, path of its saved file)."""
    model = _small_model()
    path = tmp_path / "model.npz"
    save_model(model, path)
    return model, path


def _members(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write_members(path, members):
    np.savez(path, **members)
    return path


def _edit_config(src, dst, edit):
    members = _members(src)
    config = json.loads(str(members["config"]))
    edit(config)
    members["config"] = np.array(json.dumps(config))
    return _write_members(dst, members)


def _refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value) and str(info.value).count("cannot read a fastconv model") == 1
    return str(info.value)


# ------------------------------------------------------------------------------------------ round trips

def test_round_trip_continues_training_identically(saved):
    model, path = saved
    loaded = load_model(path)
    x = np.random.default_rng(1).random((5, 1, 6, 6))
    assert model.predict(x).tobytes() == loaded.predict(x).tobytes()
    y = np.array([0, 1, 2, 1, 0])
    model.fit(x, y, batch_size=1, verbose=0)   # Dropout draws, Adam moments and step all continue
    loaded.fit(x, y, batch_size=1, verbose=0)
    assert model.params.tobytes() == loaded.params.tobytes()


def test_round_trip_without_optimizer_and_with_sgd_momentum(tmp_path):
    plain = Sequential([layers.Dense(2)], seed=0).build((3,))
    save_model(plain, tmp_path / "plain.npz")
    assert load_model(tmp_path / "plain.npz").params.tobytes() == plain.params.tobytes()
    sgd = Sequential([layers.Dense(2)], seed=0)
    sgd.compile(optimizers.SGD(0.1, momentum=0.9), "mse")
    x, y = np.ones((4, 3)), np.zeros((4, 2))
    sgd.fit(x, y, verbose=0)
    save_model(sgd, tmp_path / "sgd.npz")
    loaded = load_model(tmp_path / "sgd.npz")
    sgd.fit(x, y, verbose=0)
    loaded.fit(x, y, verbose=0)
    assert sgd.params.tobytes() == loaded.params.tobytes()


def test_numpy_scalars_in_the_config_are_saved_as_numbers(tmp_path):
    model = Sequential([layers.Dense(2)], seed=np.int64(3))
    model.compile(optimizers.SGD(np.float32(0.5)), "mse")  # json.dumps alone raises TypeError on these
    model.build((3,))
    save_model(model, tmp_path / "m.npz")
    assert (load_model(tmp_path / "m.npz").get_config()
            == json.loads(json.dumps(model.get_config(), default=lambda o: o.item())))


def test_unbuilt_model_is_not_saved(tmp_path):
    with pytest.raises(RuntimeError, match="unbuilt"):
        save_model(Sequential([layers.Dense(2)]), tmp_path / "m.npz")


# ----------------------------------------------------------------------------------------- bad files

def _probe_offsets(raw):
    """Every byte of the zip structure and the .npy headers (local headers, central directory), and every
    31st byte of the rest (array data and JSON text, which CRC-32 covers uniformly)."""
    offsets = set(range(0, len(raw), 31))
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for info in zf.infolist():
            offsets.update(range(info.header_offset, info.header_offset + 30 + len(info.filename) + 128))
        offsets.update(range(max(i.header_offset + i.compress_size for i in zf.infolist()), len(raw)))
    return sorted(o for o in offsets if o < len(raw))


def test_truncations_are_refused(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in _probe_offsets(raw):
        cut.write_bytes(raw[:n])
        _refused(cut, "cannot read a fastconv model")


def test_bit_flips_are_refused_or_harmless(saved, tmp_path):
    """CRC-32 covers every member, so a flipped byte is either refused or lies in zip metadata nobody reads."""
    model, path = saved
    raw = path.read_bytes()
    flipped = tmp_path / "flipped.npz"
    for i in _probe_offsets(raw):
        data = bytearray(raw)
        data[i] ^= 0x10
        flipped.write_bytes(bytes(data))
        try:
            loaded = load_model(flipped)
        except ValueError as exc:
            assert str(flipped) in str(exc)
            continue
        assert loaded.params.tobytes() == model.params.tobytes()
        assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
        assert loaded.get_config() == model.get_config()


def test_empty_npy_missing_and_garbage_files(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    _refused(tmp_path / "empty.npz", "empty")
    np.save(tmp_path / "array.npy", np.zeros(3))
    _refused(tmp_path / "array.npy", r"single \.npy array")
    (tmp_path / "junk.npz").write_bytes(b"this is not a model" * 10)
    assert "pickle" not in _refused(tmp_path / "junk.npz", r"not an \.npz")
    _refused(tmp_path / "missing.npz", "No such file")
    _refused(tmp_path, "directory")


def test_other_npz_files(saved, tmp_path):
    _, path = saved
    _refused(_write_members(tmp_path / "other.npz", {"a": np.zeros(3)}), "no 'config'")
    members = _members(path)
    members["extra"] = np.zeros(2)
    _refused(_write_members(tmp_path / "extra.npz", members), "extra")
    members = _members(path)
    members["params"] = np.array([object()], dtype=object)
    with open(tmp_path / "pickled.npz", "wb") as f:
        np.savez(f, **members)
    _refused(tmp_path / "pickled.npz", "Python objects")
    np.savez_compressed(tmp_path / "compressed.npz", **_members(path))
    _refused(tmp_path / "compressed.npz", "compressed")


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("layers"), "lacks 'layers'"),                                  # KeyError on main
    (lambda c: c["layers"][0]["config"].pop("filters"), "invalid layer"),           # TypeError
    (lambda c: c["layers"].append({"class": "Dense"}), "layer 5"),                  # KeyError 'config'
    (lambda c: c["layers"][0].update({"class": "Conv3D"}), "layer 0"),              # KeyError
    (lambda c: c["layers"].pop(), "has shape"),                                     # fewer parameters
    (lambda c: c["layers"][4]["config"].update({"units": 4}), "has shape"),
    (lambda c: c.update(input_shape=[1, 8, 8]), "has shape"),
    (lambda c: c.update(input_shape=[1, 2, 2]), "window"),
    (lambda c: c.update(input_shape="abc"), "input_shape"),
    (lambda c: c.update(dtype="int8"), "dtype"),
    (lambda c: c.update(dtype="float32"), "dtype"),
    (lambda c: c.update(seed=-3), "seed"),
    (lambda c: c["optimizer"].update({"class": "np"}), "optimizer class 'np'"),
    (lambda c: c["optimizer"]["config"].update({"bogus": 1}), "valid model"),
    (lambda c: c.update(loss="hinge"), "valid model"),
    (lambda c: c["layers"][0]["config"]["kernel_initializer"].update({"class": "np"}), "kernel_initializer"),
    (lambda c: c.update(optimizer=None), "optimizer/"),                             # its state is left over
])
def test_edited_config(saved, tmp_path, edit, match):
    _, path = saved
    _refused(_edit_config(path, tmp_path / "edited.npz", edit), match)


def test_config_that_is_not_json(saved, tmp_path):
    members = _members(saved[1])
    members["config"] = np.array('{"dtype": "float64",')
    _refused(_write_members(tmp_path / "j.npz", members), "not valid JSON")   # bare JSONDecodeError on main
    members["config"] = np.array("[1, 2]")
    _refused(_write_members(tmp_path / "j.npz", members), "not an object")
    members["config"] = np.zeros(3)
    _refused(_write_members(tmp_path / "j.npz", members), "not a JSON string")


def test_rng_members(saved, tmp_path):
    _, path = saved
    members = _members(path)
    members["layer_rng/9"] = members.pop("layer_rng/2")  # IndexError on main
    _refused(_write_members(tmp_path / "r.npz", members), "layer_rng")
    members = _members(path)
    members["rng_state"] = np.array('{"bit_generator": "MT19937"}')
    _refused(_write_members(tmp_path / "r.npz", members), "PCG64 state")
    members = _members(path)
    del members["rng_state"]
    _refused(_write_members(tmp_path / "r.npz", members), "no 'rng_state'")


def test_params_of_length_one_or_wrong_dtype(saved, tmp_path):
    """main broadcast a length-1 params array to every weight and cast int64 params silently."""
    _, path = saved
    members = _members(path)
    n = members["params"].size
    members["params"] = np.array([0.5])
    _refused(_write_members(tmp_path / "p.npz", members), f"shape \\(1,\\); the config's layers have {n}")
    members["params"] = np.arange(n)
    _refused(_write_members(tmp_path / "p.npz", members), "dtype int64")
    members["params"] = np.zeros((n, 1))
    _refused(_write_members(tmp_path / "p.npz", members), "shape")
    members = _members(path)
    members["params"] = members["params"].astype(">f8")  # the right values in the other byte order load
    loaded = load_model(_write_members(tmp_path / "p.npz", members))
    assert loaded.params.tobytes() == _members(path)["params"].tobytes()


def test_optimizer_state_members(saved, tmp_path):
    _, path = saved
    members = _members(path)
    members["optimizer/m"] = np.zeros(1)  # broadcast silently on main
    _refused(_write_members(tmp_path / "o.npz", members), "optimizer/m")
    members = _members(path)
    members["optimizer/iterations"] = np.array(-1)
    _refused(_write_members(tmp_path / "o.npz", members), "non-negative integer")
    members = _members(path)
    del members["optimizer/v"]
    _refused(_write_members(tmp_path / "o.npz", members), "optimizer/")
    members = _members(path)
    members["optimizer/vmax"] = members["optimizer/v"]  # AttributeError-free, but not Adam(amsgrad=False)'s state
    _refused(_write_members(tmp_path / "o.npz", members), "optimizer/")


def _zip_with(members_raw):
    """A zip of raw (name, bytes) members, uncompressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, raw in members_raw:
            zf.writestr(name, raw)
    return buffer.getvalue()


def _npy_bytes(array=None, header=None, data=b""):
    out = io.BytesIO()
    if array is not None:
        np.save(out, array)
    else:
        np.lib.format.write_array_header_1_0(out, header)
        out.write(data)
    return out.getvalue()


def test_crafted_sizes_are_refused_before_allocating(saved, tmp_path):
    """Shapes of 2**46 float64 (512 TiB) would fail as MemoryError; they must fail as checks first."""
    _, path = saved
    # the config describes a Dense layer of 2**23 x 2**23 weights
    _refused(_edit_config(path, tmp_path / "big-config.npz", lambda c: c.update(
        input_shape=[2 ** 23], layers=[{"class": "Dense", "config": {"units": 2 ** 23}}])), "70,368,752,566,272")
    # the params member's header declares 2**46 values
    members = _members(path)
    raw = [(f"{k}.npy", _npy_bytes(v)) for k, v in members.items() if k != "params"]
    header = {"descr": "<f8", "fortran_order": False, "shape": (2 ** 46,)}
    crafted = tmp_path / "big-header.npz"
    crafted.write_bytes(_zip_with(raw + [("params.npy", _npy_bytes(header=header, data=b"\0" * 64))]))
    _refused(crafted, "declares shape")
    # config and header agree on 2**46 parameters, but the file holds a few bytes of them
    config = json.loads(str(members["config"]))
    config.update(input_shape=[2 ** 23], layers=[{"class": "Dense", "config": {"units": 2 ** 23, "use_bias": False}}],
                  optimizer=None, loss=None, metrics=[])
    raw = [("config.npy", _npy_bytes(np.array(json.dumps(config)))),
           ("rng_state.npy", _npy_bytes(members["rng_state"])),
           ("params.npy", _npy_bytes(header=header, data=b"\0" * 64))]
    crafted.write_bytes(_zip_with(raw))
    _refused(crafted, "declares shape")
    # a zip entry claiming more bytes than the file has
    raw = _zip_with([("config.npy", _npy_bytes(members["config"]))])
    entry = zipfile.ZipFile(io.BytesIO(raw)).getinfo("config.npy")
    patched = bytearray(raw)
    central = raw.rindex(b"PK\x01\x02")
    patched[central + 20:central + 28] = (2 ** 31).to_bytes(4, "little") * 2  # compressed and plain sizes
    crafted.write_bytes(bytes(patched))
    assert entry.file_size < 2 ** 31
    _refused(crafted, "cannot read a fastconv model")


# ---------------------------------------------------------------------------------------------- saving

_KILLED_SAVE = """
import os, signal, sys
import numpy as np
from fastconv import Sequential, layers
from fastconv.nn.saving import save_model
model = Sequential([layers.Dense(64)], seed=0).build((1000,))
real_savez = np.savez
def savez_then_die(file, **arrays):
    file.write(b"PK" + bytes(100000))   # part of the data, then the process is killed
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
np.savez = savez_then_die
save_model(model, sys.argv[1])
"""


def _names(directory):
    return sorted(os.listdir(directory))


def test_killed_saves_leave_at_most_one_temp_file_and_the_next_save_removes_it(tmp_path):
    target = tmp_path / "m.npz"
    model = Sequential([layers.Dense(4)], seed=0).build((3,))
    save_model(model, target)
    for _ in range(3):
        # run where the fastconv under test lives, so the child imports the same one
        done = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(target)],
                              cwd=os.path.dirname(os.path.dirname(fastconv.__file__)))
        assert done.returncode == -9
    assert len(_names(tmp_path)) <= 2  # m.npz and one temp, however many saves were killed
    assert load_model(target).params.tobytes() == model.params.tobytes()  # the old file is intact
    save_model(model, target)
    assert _names(tmp_path) == ["m.npz"]


def test_a_temp_file_left_by_a_killed_save_is_replaced(tmp_path):
    target = tmp_path / "m.npz"
    (tmp_path / ".m.npz.fastconv-tmp").write_bytes(b"half a save")
    save_model(Sequential([layers.Dense(4)], seed=0).build((3,)), target)
    assert _names(tmp_path) == ["m.npz"]
    os.symlink(tmp_path / "victim", tmp_path / ".m.npz.fastconv-tmp")  # never written through
    with pytest.raises(OSError, match="not a fastconv temp file"):
        save_model(Sequential([layers.Dense(4)], seed=0).build((3,)), target)
    assert not (tmp_path / "victim").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_new_files_respect_the_umask_and_existing_files_keep_their_mode(tmp_path, umask):
    model = Sequential([layers.Dense(4)], seed=0).build((3,))
    old = os.umask(umask)
    try:
        save_model(model, tmp_path / "m.npz")
        np.savez(tmp_path / "numpy.npz", a=np.zeros(1))
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "numpy.npz").st_mode)
    os.chmod(tmp_path / "m.npz", 0o640)
    save_model(model, tmp_path / "m.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o640


def test_file_and_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_model(Sequential([layers.Dense(4)], seed=0).build((3,)), tmp_path / "m.npz")
    assert events == ["fsync file", "replace", "fsync directory"]


def test_concurrent_saves_of_one_path_each_write_a_whole_file(tmp_path):
    models = [Sequential([layers.Dense(64)], seed=s).build((500,)) for s in range(2)]
    target = tmp_path / "m.npz"
    errors = []

    def save_many(model):
        try:
            for _ in range(10):
                save_model(model, target)
        except Exception as exc:  # reported below: an exception in a thread would vanish
            errors.append(exc)

    threads = [threading.Thread(target=save_many, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _names(tmp_path) == ["m.npz"]
    assert load_model(target).params.tobytes() in {m.params.tobytes() for m in models}


# ------------------------------------------------------------------------------------ non-trainable state

def _bn_model(seed=0, dtype="float64"):
    """Conv -> batch norm -> pools -> dense, trained a few steps: the running statistics have moved."""
    model = Sequential([layers.Conv2D(3, 3), layers.BatchNormalization(), layers.Activation("relu"),
                        layers.AveragePooling2D(2, padding="same"), layers.MaxPool2D(2, padding=(0, 1, 0, 1)),
                        layers.GlobalAveragePooling2D(), layers.Reshape((3,)),
                        layers.BatchNormalization(momentum=0.9, center=False, convention="keras"),
                        layers.Dense(3, activation="softmax")], dtype=dtype, seed=seed)
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(seed)
    model.fit(rng.random((8, 1, 9, 9)), rng.integers(0, 3, 8), batch_size=4, epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_round_trip_is_bit_exact(tmp_path, dtype):
    model = _bn_model(dtype=dtype)
    assert model.state.size == 12 and not np.array_equal(model.state[:3], np.zeros(3))
    path = tmp_path / "bn.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.state.tobytes() == model.state.tobytes() and loaded.state.dtype == model.state.dtype
    assert loaded.layers[1].state["moving_mean"].tobytes() == model.layers[1].state["moving_mean"].tobytes()
    x = np.random.default_rng(1).random((5, 1, 9, 9))
    assert loaded.predict(x).tobytes() == model.predict(x).tobytes()
    y = np.array([0, 1, 2, 0, 1])
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert loaded.state.tobytes() == model.state.tobytes() and loaded.params.tobytes() == model.params.tobytes()
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]


def test_models_without_state_have_no_state_member(saved):
    model, path = saved
    assert model.state.size == 0 and "state" not in _members(path)


def test_bad_state_members_are_refused(tmp_path):
    path = tmp_path / "bn.npz"
    save_model(_bn_model(), path)
    members = _members(path)
    n = members["state"].size
    members["state"] = np.zeros(n + 1)
    _refused(_write_members(tmp_path / "s.npz", members), f"state has shape \\({n + 1},\\); the config's layers "
                                                          f"have {n} state values")
    members["state"] = np.zeros(n, np.float32)
    _refused(_write_members(tmp_path / "s.npz", members), "state has dtype float32")
    members["state"] = np.arange(n)
    _refused(_write_members(tmp_path / "s.npz", members), "state has dtype int64")
    del members["state"]
    _refused(_write_members(tmp_path / "s.npz", members), "no 'state' member")
    members = _members(path)
    members["state"] = members["state"].astype(">f8")   # the other byte order holds the same values
    assert load_model(_write_members(tmp_path / "s.npz", members)).state.tobytes() == _members(path)["state"].tobytes()
    plain = tmp_path / "plain.npz"
    save_model(_small_model(), plain)
    stray = _members(plain)
    stray["state"] = np.zeros(3)
    _refused(_write_members(tmp_path / "x.npz", stray), "does not have")
