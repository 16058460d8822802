"""Cloud Run instance cost against OpenAI's per-minute price, and the break-even utilisation.

Cloud Run GPU services use instance-based billing: an instance costs the same per second whether it
is busy or idle. Self-hosting is cheaper than OpenAI only when the instance is busy enough, so the
useful number is the utilisation at which the two cost the same.
"""

from pydantic import BaseModel, Field


class PriceTable(BaseModel):
    """Unit prices, with the date and the source they were read from (prices change: verify)."""

    region: str = "us-central1"
    as_of: str = "2026-08"
    source: str = (
        "third-party reading of Google Cloud billing SKUs (Cloud Run, us-central1), and OpenAI's "
        "pricing page for whisper-1; see docs/benchmarks.md — verify before quoting"
    )
    gpu_l4_per_s_no_zonal_redundancy: float = 0.0001867
    gpu_l4_per_s_zonal_redundancy: float = 0.0002909
    vcpu_per_s: float = 0.000018
    gib_per_s: float = 0.000002
    openai_whisper_per_audio_minute: float = 0.006


class InstanceShape(BaseModel):
    """The Cloud Run instance the service is deployed on (infra's defaults: 4 vCPU, 16 GiB, 1 L4)."""

    vcpu: float = Field(4, gt=0)
    memory_gib: float = Field(16, gt=0)
    gpus: int = Field(1, ge=0)
    zonal_redundancy: bool = False

    def cost_per_second(self, prices: PriceTable) -> float:
        gpu_price = (
            prices.gpu_l4_per_s_zonal_redundancy
            if self.zonal_redundancy
            else prices.gpu_l4_per_s_no_zonal_redundancy
        )
        return self.gpus * gpu_price + self.vcpu * prices.vcpu_per_s + self.memory_gib * prices.gib_per_s

    def cost_per_hour(self, prices: PriceTable) -> float:
        return self.cost_per_second(prices) * 3600


class CostEstimate(BaseModel):
    """Cost of one target's measured throughput on the configured instance shape."""

    instance_cost_per_hour: float
    audio_seconds_per_wall_second: float
    self_hosted_per_audio_minute: float | None = Field(
        description="At 100 % utilisation: instance cost of the wall time one audio minute takes."
    )
    openai_per_audio_minute: float
    break_even_utilisation: float | None = Field(
        description="Fraction of the time the instance must be busy to cost what OpenAI would "
        "charge for the same audio; above 1 means self-hosting never breaks even at this throughput."
    )
    run_instance_cost: float = Field(description="Instance cost of this run's wall time.")
    run_openai_cost: float = Field(description="What OpenAI would charge for this run's audio.")


def estimate_cost(
    audio_seconds: float, wall_seconds: float, shape: InstanceShape, prices: PriceTable
) -> CostEstimate:
    """Cost per audio minute and break-even utilisation from the audio processed in `wall_seconds`."""
    if audio_seconds < 0 or wall_seconds <= 0:
        raise ValueError("audio_seconds must be >= 0 and wall_seconds > 0")
    per_second = shape.cost_per_second(prices)
    throughput = audio_seconds / wall_seconds
    openai_per_minute = prices.openai_whisper_per_audio_minute
    self_per_minute = per_second * 60 / throughput if throughput > 0 else None
    # Instance cost per hour vs OpenAI's price for the audio one busy hour processes.
    openai_per_busy_hour = throughput * 3600 / 60 * openai_per_minute
    break_even = shape.cost_per_hour(prices) / openai_per_busy_hour if openai_per_busy_hour > 0 else None
    return CostEstimate(
        instance_cost_per_hour=shape.cost_per_hour(prices),
        audio_seconds_per_wall_second=throughput,
        self_hosted_per_audio_minute=self_per_minute,
        openai_per_audio_minute=openai_per_minute,
        break_even_utilisation=break_even,
        run_instance_cost=per_second * wall_seconds,
        run_openai_cost=audio_seconds / 60 * openai_per_minute,
    )


def openai_cost(audio_seconds: float, prices: PriceTable) -> float:
    return audio_seconds / 60 * prices.openai_whisper_per_audio_minute
