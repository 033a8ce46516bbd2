# Hermitage G2-item, write skew: each reads both keys and writes the one the other did not.
put - test/1 10
put - test/2 20
begin T1
begin T2
get T1 test/1
get T1 test/2
get T2 test/1
get T2 test/2
put T1 test/1 11
put T2 test/2 21
commit T1
commit T2           # read committed: commits; no serial order gives both reads
list - test/
