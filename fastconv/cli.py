"""Command line: ``fastconv train`` (seed 000's CNN on MNIST) and ``fastconv study`` (the seeds' experiments)."""
import argparse
import os
import sys
import time

import numpy as np

from . import datasets, initializers, optimizers
from .zoo import SEED_INITS, seed_cnn

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


def train(argv):
    p = argparse.ArgumentParser(prog="fastconv train", description="Train seed 000's CNN on MNIST and report test accuracy.")
    p.add_argument("--data", help="MNIST .npz (Keras or seed 000 format) or a directory of IDX files; "
                                  "default: the embedded 5,000-image real-MNIST subset")
    p.add_argument("--init", type=_parse_inits, default=SEED_INITS,
                   help="initializer for all layers, or conv1,conv2,dense (default: glorot_normal,he_normal,he_normal)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, help="use only the first N training images")
    p.add_argument("--test", type=int, help="use only the first N test images")
    p.add_argument("--save", metavar="PATH", help="save the trained model (.npz)")
    p.add_argument("--plot", metavar="PATH", help="save loss/accuracy curves as PNG (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be >= 1")
    try:
        (x_train, y_train), (x_test, y_test) = datasets.load_mnist(args.data)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
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
    if args.save:
        model.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot:
        _plot(history, args.plot)
        print(f"saved curves to {args.plot}")
    return 0


def _plot(history, path):
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastconv[plot]'")
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


def study(argv):
    from . import studies

    p = argparse.ArgumentParser(prog="fastconv study", description="The seeds' initialization experiments, "
                                "with many seeds, error bars, tables (markdown, CSV, JSON) and PNG plots.")
    p.add_argument("name", choices=["moons", "mnist-init", "depth"])
    p.add_argument("--seeds", type=int, help="independent runs per setting (default: moons 3, mnist-init 10, depth 3)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (joblib)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster (tcp://host:8786)")
    p.add_argument("--out", help="output directory (default: study-NAME)")
    p.add_argument("--epochs", type=int, default=15000, help="moons: full-batch epochs")
    p.add_argument("--train", type=int, default=1000, help="mnist-init: training images")
    p.add_argument("--test", type=int, default=1000, help="mnist-init: test images")
    p.add_argument("--data", help="mnist-init: MNIST file or directory (default: embedded subset)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.seeds is not None and args.seeds < 1) or args.jobs < 1:
        p.error("--seeds and --jobs must be >= 1")
    common = dict(out=args.out or f"study-{args.name}", jobs=args.jobs, scheduler=args.scheduler, progress=not args.quiet)
    if args.name == "moons":
        studies.moons(seeds=args.seeds or 3, epochs=args.epochs, **common)
    elif args.name == "mnist-init":
        studies.mnist_init(seeds=args.seeds or 10, train=args.train, test=args.test, data=args.data, **common)
    else:
        studies.depth(seeds=args.seeds or 3, **common)
    table = os.path.join(common["out"], args.name.replace("-", "_") + ".md")
    print(open(table).read())
    print(f"results in {common['out']}/")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train, "study": study}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: fastconv {train,study} [options]   (fastconv train --help, fastconv study --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
