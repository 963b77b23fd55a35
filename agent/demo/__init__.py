"""Demo MES source data (Microsoft AdventureWorks Production tables) and its loader."""
