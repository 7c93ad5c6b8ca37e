"""Daily compliance report per campaign: figures (compute), rows (query), output (render)."""

from .compute import CampaignDay, InboundDay, campaign_day, inbound_day, percentile
from .query import load_inbound_without_campaign, load_report
from .render import FORMATS, render

__all__ = [
    "FORMATS",
    "CampaignDay",
    "InboundDay",
    "campaign_day",
    "inbound_day",
    "load_inbound_without_campaign",
    "load_report",
    "percentile",
    "render",
]
