"""Dollars from measured GPU- and CPU-seconds and the prices a user or the operator gives.

Never an invented price: a run whose resource has no price has no dollars, only its seconds.
"""

from quanteval.api.spec import CostSpec, QuantEval


def run_dollars(gpu_seconds: float, cpu_seconds: float, cost: CostSpec) -> float | None:
    """GPU-hours x gpuHourUSD plus, where priced, CPU-hours x cpuHourUSD.

    A run that held GPUs needs gpuHourUSD (its CPU time is added only when cpuHourUSD is set);
    a CPU run needs cpuHourUSD. Otherwise None.
    """
    if gpu_seconds > 0:
        if cost.gpu_hour_usd is None:
            return None
        cpu = cpu_seconds / 3600 * cost.cpu_hour_usd if cost.cpu_hour_usd is not None else 0.0
        return gpu_seconds / 3600 * cost.gpu_hour_usd + cpu
    if cost.cpu_hour_usd is None:
        return None
    return cpu_seconds / 3600 * cost.cpu_hour_usd


def per_thousand(dollars: float | None, generations: int) -> float | None:
    return None if dollars is None or generations == 0 else dollars / generations * 1000


def with_default_cost(
    manifest: QuantEval, gpu_hour_usd: float | None, cpu_hour_usd: float | None
) -> QuantEval:
    """The manifest with these prices where its spec.cost leaves them out (the spec wins)."""
    cost = manifest.spec.cost
    merged = CostSpec(
        gpu_hour_usd=cost.gpu_hour_usd if cost.gpu_hour_usd is not None else gpu_hour_usd,
        cpu_hour_usd=cost.cpu_hour_usd if cost.cpu_hour_usd is not None else cpu_hour_usd,
    )
    return manifest.model_copy(update={"spec": manifest.spec.model_copy(update={"cost": merged})})
