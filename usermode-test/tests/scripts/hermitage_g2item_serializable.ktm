# Hermitage G2-item, write skew, at serializable: each reads both keys and writes the one the
# other did not. T1's commit changes test/1, which T2 read, so T2 cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
get T1 test/1
get T1 test/2
get T2 test/1
get T2 test/2
put T1 test/1 11
put T2 test/2 21
commit T1           # changes test/1, which T2 read: T2 is doomed
commit T2           # votes no: aborted, its write of test/2 discarded
list - test/
