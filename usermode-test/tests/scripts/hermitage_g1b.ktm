# Hermitage G1b, intermediate reads: a reader never sees a value its writer later replaced.
# Prevented at every level.
put - test/1 10
put - test/2 20
begin T1
begin T2
put T1 test/1 101
get T2 test/1       # not T1's intermediate 101
put T1 test/1 11
commit T1
get T2 test/1       # read committed: T1's final value
commit T2
