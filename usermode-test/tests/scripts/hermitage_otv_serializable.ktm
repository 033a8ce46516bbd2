# Hermitage OTV, observed transaction vanishes, at serializable: a reader that saw T1's writes
# never later sees a state where only some of them remain. Beyond read committed, T2's commit
# changes test/2, which T3 read, so T3 cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
begin T3 serializable
put T1 test/1 11
put T1 test/2 19
put T2 test/1 12    # refused: T1 holds test/1
commit T1
get T3 test/1       # T1's
put T2 test/2 18
get T3 test/2       # T1's
commit T2           # T2 read nothing: commits; changes test/2, which T3 read: T3 is doomed
get T3 test/2       # T2's, committed after T1
get T3 test/1       # still T1's: T2 never wrote it
commit T3           # votes no: aborted
