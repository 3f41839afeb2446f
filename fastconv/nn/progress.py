"""A progress bar for training and sweeps: tqdm when installed, else a one-line text bar on stderr."""
import sys
import time

__all__ = ["Progress"]


class Progress:
    """tqdm when installed, else a one-line text bar; silent when ``verbose`` is 0.

    ``update(n, postfix)`` advances by ``n`` units and shows ``postfix`` (a dict of short strings);
    ``close()`` ends the line.
    """

    def __init__(self, total, desc, verbose, unit="sample"):
        self.verbose, self.total, self.n, self.desc, self.bar = verbose, total, 0, desc, None
        self._last = 0.0
        if verbose:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=True, file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, n, postfix=None):
        self.n += n
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif self.n == self.total or time.perf_counter() - self._last > 0.5:
            self._last = time.perf_counter()
            done = int(30 * self.n / max(1, self.total))
            stats = " ".join(f"{k}={v}" for k, v in (postfix or {}).items())
            sys.stderr.write(f"\r{self.desc} [{'=' * done}{'.' * (30 - done)}] {self.n}/{self.total} {stats}")
            sys.stderr.flush()

    def close(self):
        if self.verbose:
            if self.bar is not None:
                self.bar.close()
            else:
                sys.stderr.write("\n")
