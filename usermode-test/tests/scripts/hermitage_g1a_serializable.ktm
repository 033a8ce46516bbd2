# Hermitage G1a, aborted reads, at serializable: a reader never sees a write that is rolled
# back. A rollback commits nothing, so T2's reads stay valid and it commits.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
put T1 test/1 101
get T2 test/1       # committed value only
rollback T1
get T2 test/1
commit T2           # its reads still hold: commits
