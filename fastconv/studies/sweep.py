"""The sweep runner: a study's independent, seeded runs, here, in joblib processes or on a Dask cluster."""
from .. import get_num_threads, set_num_threads
from ..nn.progress import Progress

__all__ = ["run_sweep", "threads_per_worker"]


def threads_per_worker(workers, cores=None):
    """Kernel threads for each of ``workers`` concurrent workers: ``max(1, cores // workers)``.

    ``cores`` defaults to ``joblib.cpu_count()``, the CPUs this process may use (affinity and cgroup quotas
    included), so the workers together never run more threads than there are cores.

    Examples
    --------
    >>> threads_per_worker(3, cores=8)
    2
    """
    if cores is None:
        import joblib

        cores = joblib.cpu_count()
    return max(1, int(cores) // int(workers))


def _call_with_threads(fn, threads, /, **task):
    """``fn(**task)`` with fastconv's kernels on ``threads`` threads, the worker's own count restored after."""
    previous = get_num_threads()
    set_num_threads(threads)
    try:
        return fn(**task)
    finally:
        set_num_threads(previous)


def run_sweep(fn, tasks, jobs=1, scheduler=None, progress=True, desc="runs"):
    """``[fn(**task) for task in tasks]``, in parallel.

    jobs : processes for joblib's local backend (1: run here, no joblib needed).  With ``jobs`` > 1 each
        worker's kernels use ``threads_per_worker(jobs)`` = max(1, cores // jobs) threads: fastconv's own
        count (:func:`fastconv.set_num_threads`, set in the worker) and, through joblib's
        ``inner_max_num_threads``, BLAS's and OpenMP's.
    scheduler : address of a Dask scheduler (``tcp://host:8786``) or a ``dask.distributed.Client``;
        the runs then go through joblib's Dask backend, on the threads the cluster's workers have.
    """
    tasks = list(tasks)
    bar = Progress(len(tasks), desc, progress, unit="run")
    results = []
    if scheduler is None and jobs == 1:
        for task in tasks:
            results.append(fn(**task))
            bar.update(1)
    else:
        try:
            import joblib
        except ImportError as exc:
            raise ImportError("jobs > 1 or a scheduler needs joblib: pip install 'fastconv[study]'") from exc
        if scheduler is not None:
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise ImportError("scheduler= needs dask.distributed: pip install 'fastconv[dask]'") from exc
            calls = (joblib.delayed(fn)(**task) for task in tasks)
            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                with client.as_current(), joblib.parallel_backend("dask"):
                    for result in joblib.Parallel(return_as="generator")(calls):
                        results.append(result)
                        bar.update(1)
            finally:
                if client is not scheduler:
                    client.close()
        else:
            threads = threads_per_worker(joblib.effective_n_jobs(jobs))
            calls = (joblib.delayed(_call_with_threads)(fn, threads, **task) for task in tasks)
            with joblib.parallel_config(backend="loky", inner_max_num_threads=threads):
                for result in joblib.Parallel(n_jobs=jobs, return_as="generator")(calls):
                    results.append(result)
                    bar.update(1)
    bar.close()
    return results
