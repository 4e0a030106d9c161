"""Evidence for the regulator: erasure of every file copy (tombstones), the record of processing
(Article 30) from what happened, subject access by any identifier a family holds, and Article 19 notices."""
