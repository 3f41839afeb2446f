"""Command line: ``fastconv train`` (seed 000's CNN on MNIST) and ``fastconv study`` (the seeds' experiments).

Every option is checked as it is parsed (argparse ``type=`` functions, then the checks that need several
options), so a bad value gets argparse's one-line error and exit code 2 before any data is loaded, any
model is trained or any study runs.
"""
import argparse
import importlib.util
import math
import os
import socket
import struct
import sys
import time
import urllib.parse

import numpy as np

from . import __version__, datasets, initializers, optimizers
from .nn.saving import save_model
from .zoo import SEED_INITS, seed_cnn

# the study subcommand's names and their default --seeds ("all" runs every study with its own default)
DEFAULT_SEEDS = {"depth": 3, "trainability": 3, "batchnorm": 5, "selu": 3, "moons": 3, "mnist-init": 10}
STUDY_NAMES = list(DEFAULT_SEEDS) + ["all"]
SCHEDULER_TIMEOUT = 2.0  # seconds to wait for a Dask scheduler's TCP port before giving up
# Dask's protocols; all but ucx run over TCP, so a connect() tells whether the scheduler is there
_SCHEDULER_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` after each option's help, except for flags and options without a default."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


# -------------------------------------------------------------------------------- option types (type=)

def _int_at_least(minimum, what):
    """An argparse type: an int >= ``minimum`` (``what`` names it in the error)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _parse_inits(text):
    names = [t.strip() for t in text.split(",")]
    if len(names) == 1:
        names *= 3
    if len(names) != 3:
        raise argparse.ArgumentTypeError("--init takes one name or three comma-separated names (conv1,conv2,dense)")
    for name in names:
        try:
            initializers.get(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return tuple(names)


def _existing_path(text):
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or directory: {text!r}")
    return text


def _writable_file(text):
    """A file path whose directory exists and is writable (checked now, so a long run cannot fail at the end)."""
    path = os.path.abspath(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"directory {directory!r} is not writable")
    return text


def _plot_file(text):
    try:
        import matplotlib  # noqa: F401  (only whether it imports)
    except ImportError:
        raise argparse.ArgumentTypeError("--plot needs matplotlib: pip install 'fastconv[plot]'") from None
    return _writable_file(text)


def _output_directory(text):
    """A directory that exists or can be made: its nearest existing ancestor is a writable directory."""
    path = os.path.abspath(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    ancestor = path
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise argparse.ArgumentTypeError(f"cannot make {text!r}: {ancestor!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {ancestor!r}")
    return text


def _scheduler_address(text):
    """A Dask scheduler address, ``[PROTOCOL://]HOST:PORT`` (tcp:// when none is given), that answers now."""
    address = text if "://" in text else "tcp://" + text
    parts = urllib.parse.urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in _SCHEDULER_PROTOCOLS or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"expected a Dask scheduler address such as tcp://host:8786, got {text!r}")
    if importlib.util.find_spec("distributed") is None or importlib.util.find_spec("joblib") is None:
        raise argparse.ArgumentTypeError("--scheduler needs dask.distributed and joblib: pip install 'fastconv[dask]'")
    if parts.scheme != "ucx":
        try:
            _probe_scheduler(parts.hostname, port, parts.scheme)
        except (OSError, ValueError) as exc:
            reason = f"no answer within {SCHEDULER_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else exc
            raise argparse.ArgumentTypeError(f"cannot reach a Dask scheduler at {parts.hostname}:{port} ({reason})") \
                from None
    return address


def _probe_scheduler(host, port, scheme):
    """Connect to ``host:port`` within SCHEDULER_TIMEOUT; over plain tcp, also read the first 8 bytes.

    A Dask server speaks first: its handshake message, which starts with its length as a native uint64
    (distributed.comm.tcp).  Anything else listening there (a web server, a proxy) is refused here rather
    than by Dask, which would read "HTTP/1.1" as a 3.5e18-byte length.  tls and ws wait for the client.
    """
    with socket.create_connection((host, port), timeout=SCHEDULER_TIMEOUT) as sock:
        if scheme != "tcp":
            return
        head = b""
        while len(head) < 8:
            piece = sock.recv(8 - len(head))
            if not piece:
                raise ConnectionError("it closed the connection without a handshake")
            head += piece
    (size,) = struct.unpack("Q", head)
    if not 0 < size < 1 << 20:
        raise ValueError(f"it answers {head!r}, which is not a Dask handshake")


# ---------------------------------------------------------------------------------------------- parser

def build_parser():
    """The ``fastconv`` argument parser, with its ``train`` and ``study`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="fastconv", formatter_class=_HelpFormatter,
        description="Fast from-scratch CNN training on the CPU: train seed 000's network on MNIST, or run the "
                    "seeds' initialization studies.",
        epilog="Run 'fastconv COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)

    p = commands.add_parser("train", formatter_class=_HelpFormatter, help="train seed 000's CNN on MNIST",
                            description="Train seed 000's CNN on MNIST and report test accuracy.")
    p.add_argument("--data", type=_existing_path,
                   help="MNIST .npz (Keras or seed 000 format) or a directory of IDX files "
                        "(default: the embedded 5,000-image real-MNIST subset)")
    p.add_argument("--init", type=_parse_inits, default=",".join(SEED_INITS),
                   help="initializer for all layers, or conv1,conv2,dense")
    p.add_argument("--epochs", type=_positive_int, default=3, help="passes over the training images")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per Adam step")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameter and activation dtype")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seeds initialization and shuffling")
    p.add_argument("--train", type=_positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("--test", type=_positive_int, metavar="N", help="use only the first N test images")
    p.add_argument("--save", type=_writable_file, metavar="PATH", help="save the trained model (.npz)")
    p.add_argument("--plot", type=_plot_file, metavar="PATH",
                   help="save loss/accuracy curves as PNG (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train, parser=p)

    p = commands.add_parser("study", formatter_class=_HelpFormatter,
                            help="run one of the seeds' initialization studies, or all of them and a report",
                            description="The seeds' initialization experiments, with many seeds, error bars, "
                                        "tables (markdown, CSV, JSON) and PNG plots. 'all' runs every study with "
                                        "its defaults into OUT/NAME/ and writes OUT/index.html and OUT/report.md.")
    p.add_argument("name", choices=STUDY_NAMES, help="the study")
    p.add_argument("--seeds", type=_positive_int,
                   help="independent runs per setting (default: " + ", ".join(
                       f"{name} {seeds}" for name, seeds in DEFAULT_SEEDS.items()) + ")")
    p.add_argument("--jobs", type=_positive_int, default=1, help="local worker processes (joblib)")
    p.add_argument("--scheduler", type=_scheduler_address, metavar="ADDRESS",
                   help="run on a Dask cluster (tcp://host:8786); checked for a reply before the study starts")
    p.add_argument("--out", type=_output_directory, help="output directory (default: study-NAME)")
    p.add_argument("--epochs", type=_positive_int, default=15000, help="moons: full-batch epochs")
    p.add_argument("--train", type=_positive_int, default=1000, help="mnist-init: training images")
    p.add_argument("--test", type=_positive_int, default=1000, help="mnist-init: test images")
    p.add_argument("--steps", type=_positive_int,
                   help="batchnorm, selu, trainability: training steps of 64 images per run "
                        "(default: batchnorm 250, selu 300, trainability 600)")
    p.add_argument("--data", type=_existing_path, help="mnist-init: MNIST file or directory (default: embedded subset)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_study, parser=p)
    return parser


def main(argv=None):
    """Run ``fastconv`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Bad options raise ``SystemExit(2)`` with argparse's message on stderr; ``--help`` and ``--version``
    raise ``SystemExit(0)``.
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return args.run(args)


# -------------------------------------------------------------------------------------------- commands

def _train(args):
    try:
        (x_train, y_train), (x_test, y_test) = datasets.load_mnist(args.data)
    except (OSError, ValueError) as exc:
        args.parser.error(str(exc))
    x_train, y_train = x_train[:args.train], y_train[:args.train]
    x_test, y_test = x_test[:args.test], y_test[:args.test]
    scale = np.float32(255) if args.dtype == "float32" else 255.0
    x_train = x_train.astype(args.dtype) / scale
    x_test = x_test.astype(args.dtype) / scale
    model = seed_cnn(args.init, args.dtype, args.seed)
    model.compile(optimizers.Adam(learning_rate=args.lr), "sparse_categorical_crossentropy", ["accuracy"])
    print(f"fastconv train: {len(x_train)} train / {len(x_test)} test images, init {','.join(args.init)}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {args.dtype}, seed {args.seed}")
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test)
    for epoch, (loss, acc, vacc) in enumerate(zip(history.history["loss"], history.history["accuracy"],
                                                  history.history["val_accuracy"]), 1):
        print(f"epoch {epoch}: loss {loss:.4f}  train accuracy {acc:.4f}  test accuracy {vacc:.4f}")
    print(f"trained in {seconds:.1f} s ({seconds / (len(x_train) * args.epochs) * 1e6:.0f} us/sample)")
    print(f"test accuracy: {result['accuracy']:.4f}  (loss {result['loss']:.4f})")
    code = 0
    for path, write, what in ((args.save, lambda p: save_model(model, p), "model"),
                              (args.plot, lambda p: _plot(history, p), "curves")):
        if path:
            try:
                write(path)
            except OSError as exc:  # the directory was checked at start; the disk can still fill up
                print(f"fastconv train: error: cannot save the {what} to {path}: {exc}", file=sys.stderr)
                code = 1
            else:
                print(f"saved {what} to {path}")
    return code


def _plot(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history.history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history.history["loss"], "o-", label="train")
    ax1.plot(epochs, history.history["val_loss"], "s--", label="test")
    ax1.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss (nats)")
    ax2.plot(epochs, np.array(history.history["accuracy"]) * 100, "o-", label="train")
    ax2.plot(epochs, np.array(history.history["val_accuracy"]) * 100, "s--", label="test")
    ax2.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax1, ax2):
        ax.set_xticks(epochs)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("fastconv train: seed 000 CNN on MNIST")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _study(args):
    out = args.out or f"study-{args.name}"
    try:
        _output_directory(out)
    except argparse.ArgumentTypeError as exc:
        args.parser.error(f"argument --out: {exc}")
    if args.jobs > 1 and importlib.util.find_spec("joblib") is None:
        args.parser.error("argument --jobs: more than one job needs joblib: pip install 'fastconv[study]'")

    if args.steps is not None and args.name not in ("batchnorm", "selu", "trainability", "all"):
        args.parser.error(f"argument --steps: the {args.name} study has no training steps to set "
                          "(it is for batchnorm, selu, trainability and all)")

    from . import studies

    common = dict(out=out, jobs=args.jobs, scheduler=args.scheduler, progress=not args.quiet)
    if args.name == "all":
        options = {} if args.steps is None else {n: {"steps": args.steps}
                                                 for n in ("batchnorm", "selu", "trainability")}
        if args.epochs != 15000:
            options["moons"] = {"epochs": args.epochs}
        mnist = {k: v for k, v in (("train", args.train), ("test", args.test)) if v != 1000}
        mnist.update({"data": args.data} if args.data else {})
        if mnist:
            options["mnist-init"] = mnist
        sections = studies.study_all(seeds=args.seeds, options=options, **common)
        for section in sections:
            print(f"{section['name']}: {section['seconds']:.0f} s")
        print(f"report in {os.path.join(out, 'index.html')} and {os.path.join(out, 'report.md')}")
        return 0
    seeds = args.seeds or DEFAULT_SEEDS[args.name]
    steps = {} if args.steps is None else {"steps": args.steps}
    if args.name == "moons":
        studies.moons(seeds=seeds, epochs=args.epochs, **common)
    elif args.name == "mnist-init":
        studies.mnist_init(seeds=seeds, train=args.train, test=args.test, data=args.data, **common)
    elif args.name == "depth":
        studies.depth(seeds=seeds, **common)
    else:
        getattr(studies, args.name)(seeds=seeds, **steps, **common)
    with open(os.path.join(out, args.name.replace("-", "_") + ".md")) as f:
        print(f.read())
    print(f"results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
