"""mes-erp-agent: MES tables to ERP staging tables over direct database connections.

A row's path through the package, one module per stage:
schedule -> drift (gate) -> read (watermark) -> mapping (map/validate) -> write (staging + watermark) -> report.
`pipeline` runs the stages for one flow; `dialects` holds every database difference.
"""

__version__ = "0.1.0"
