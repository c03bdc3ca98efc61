-- 0007_reserved.sql - a placeholder on the `newcomer` branch only: number 7
-- belongs to another branch's migration, and embed-migrations.py wants the
-- numbers without gaps. It changes nothing. Drop this file when merging (the
-- other branch's 0007 takes its place; 0008_step_series.sql follows it).
SELECT 1;
