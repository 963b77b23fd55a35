-- One row per batch (or per failed/halted run): counts, timings, outcome. Never updated afterwards.
-- Parameters: :batch_id, :flow, :started_at, :finished_at (UTC), :rows_read, :rows_written,
--             :rows_duplicate, :rows_quarantined, :watermark_before, :watermark_after, :outcome, :message
INSERT INTO {{ run_table }} (
    batch_id, flow, started_at, finished_at, rows_read, rows_written, rows_duplicate,
    rows_quarantined, watermark_before, watermark_after, outcome, message
) VALUES (
    :batch_id, :flow, :started_at, :finished_at, :rows_read, :rows_written, :rows_duplicate,
    :rows_quarantined, :watermark_before, :watermark_after, :outcome, :message
)
