# Hermitage G1b, intermediate reads, at serializable: a reader never sees a value its writer
# later replaced. Beyond read committed, T1's commit changes what T2 read, so T2 cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
put T1 test/1 101
get T2 test/1       # not T1's intermediate 101
put T1 test/1 11
commit T1           # changes test/1, which T2 read: T2 is doomed
get T2 test/1       # reads still answer, with committed data: 11
commit T2           # votes no: aborted
