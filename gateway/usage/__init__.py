"""Usage metering: prices, exactly-once settlement of finished predictions, and usage reports."""

from gateway.usage.metering import Metering
from gateway.usage.prices import Price
from gateway.usage.reports import UsageQuery, UsageReports, parse_groups, report_csv

__all__ = ["Metering", "Price", "UsageQuery", "UsageReports", "parse_groups", "report_csv"]
