-- Move the watermark forward, in the same transaction as the batch's staging rows.
-- The revision check makes a second agent writing the same flow fail instead of double-writing.
-- Parameters: :flow, :watermark_values, :updated_at, :revision (the revision read at the start)
UPDATE {{ watermark_table }}
SET watermark_values = :watermark_values, revision = revision + 1, updated_at = :updated_at
WHERE flow = :flow AND revision = :revision
