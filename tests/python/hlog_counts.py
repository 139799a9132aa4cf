"""Decodes a feedrelay .hlog with the Python `hdrhistogram` package (an independent
HdrHistogram implementation) and prints the total count and max per tag as JSON."""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 60_000_000_000, 3))
totals = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag() or "untagged"
    t = totals.setdefault(tag, {"count": 0, "max": 0, "intervals": 0})
    t["count"] += h.get_total_count()
    t["max"] = max(t["max"], h.get_max_value())
    t["intervals"] += 1
print(json.dumps(totals, sort_keys=True))
