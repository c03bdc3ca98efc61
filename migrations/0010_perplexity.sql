-- 0010_perplexity.sql - the metrics of a language model (issue 24,
-- doc/sequences.md): a job on token data with a class per position (a
-- text's next tokens) learns per token.
--
-- history.val_ppl: its validation perplexity, exp(val_loss) with val_loss
-- the mean cross-entropy over every position of the validation windows;
-- NULL for the other tasks and for rows stored before. Its train_acc and
-- val_acc are the per-token accuracy, its macro columns NULL.

ALTER TABLE history ADD COLUMN val_ppl REAL;
