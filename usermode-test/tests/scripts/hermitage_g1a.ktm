# Hermitage G1a, aborted reads: a reader never sees a write that is rolled back. Prevented at
# every level.
put - test/1 10
put - test/2 20
begin T1
begin T2
put T1 test/1 101
get T2 test/1       # committed value only
rollback T1
get T2 test/1
commit T2
