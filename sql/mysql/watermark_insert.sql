-- First batch of a flow: create its watermark row (same transaction as the batch's staging rows).
-- Parameters: :flow, :watermark_columns, :watermark_values (JSON, typed), :updated_at (UTC)
INSERT INTO {{ watermark_table }} (flow, watermark_columns, watermark_values, revision, updated_at)
VALUES (:flow, :watermark_columns, :watermark_values, 1, :updated_at)
