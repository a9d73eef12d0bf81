"""Time-series sinks: where the daemon's samples, results and health go beyond its own store.

``hub.SinkHub`` takes every block and result from the daemon (listeners that only enqueue, so a
sink never sets the sampling pace), integrates energy per channel on its own thread, keeps the
figures the Prometheus exporter reads (``powerd.metrics``) and feeds the configured sinks:
``influx.InfluxSink`` writes InfluxDB line protocol (InfluxDB 2/3, VictoriaMetrics) through
``influxdb-client``, buffering on disk (``buffer.DiskBuffer``) while the store is unreachable.
"""
