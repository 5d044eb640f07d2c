"""Safe outputs (checks, locks, write-then-rename) and the torch-free ``.pt`` checkpoint format."""
