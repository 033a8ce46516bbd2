# Hermitage G-single, read skew, at serializable: T1 reads test/1 before T2 moves 2 from test/2
# to test/1, and test/2 after. T1 reads only, and is validated too: it cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
get T1 test/1
get T2 test/1
get T2 test/2
put T2 test/1 12
put T2 test/2 18
commit T2           # changes test/1, which T1 read: T1 is doomed
get T1 test/2       # reads still answer, with committed data: 18
commit T1           # read-only, still validated: votes no, aborted
