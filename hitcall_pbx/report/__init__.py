"""Daily compliance report per campaign: figures (compute), rows (query), output (render)."""

from .compute import CampaignDay, campaign_day, percentile
from .query import load_report
from .render import FORMATS, render

__all__ = ["FORMATS", "CampaignDay", "campaign_day", "load_report", "percentile", "render"]
