"""The gateway's benchmark harness: `python -m bench` runs every target and scenario side by side on 127.0.0.1
and prints one table of throughput, latency, Redis cost, memory and CPU, with the issue's targets judged."""
