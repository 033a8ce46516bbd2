# Hermitage OTV, observed transaction vanishes: a reader that saw T1's writes never later sees
# a state where only some of them remain. Prevented at every level.
put - test/1 10
put - test/2 20
begin T1
begin T2
begin T3
put T1 test/1 11
put T1 test/2 19
put T2 test/1 12    # refused: T1 holds test/1
commit T1
get T3 test/1       # T1's
put T2 test/2 18
get T3 test/2       # T1's
commit T2
get T3 test/2       # T2's, committed after T1
get T3 test/1       # still T1's: T2 never wrote it
commit T3
