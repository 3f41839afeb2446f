"""The sweep runner: a study's independent, seeded runs, here, in joblib processes or on a Dask cluster."""
from ..nn.progress import Progress

__all__ = ["run_sweep"]


def run_sweep(fn, tasks, jobs=1, scheduler=None, progress=True, desc="runs"):
    """``[fn(**task) for task in tasks]``, in parallel.

    jobs : processes for joblib's local backend (1: run here, no joblib needed).
    scheduler : address of a Dask scheduler (``tcp://host:8786``) or a ``dask.distributed.Client``;
        the runs then go through joblib's Dask backend.
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
        calls = (joblib.delayed(fn)(**task) for task in tasks)
        if scheduler is not None:
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise ImportError("scheduler= needs dask.distributed: pip install 'fastconv[dask]'") from exc
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
            for result in joblib.Parallel(n_jobs=jobs, return_as="generator")(calls):
                results.append(result)
                bar.update(1)
    bar.close()
    return results
