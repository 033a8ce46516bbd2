# Hermitage G-single, read skew: T1 reads test/1 before T2 moves 2 from test/2 to test/1, and
# test/2 after.
put - test/1 10
put - test/2 20
begin T1
begin T2
get T1 test/1
get T2 test/1
get T2 test/2
put T2 test/1 12
put T2 test/2 18
commit T2
get T1 test/2       # read committed: 18, so T1 saw 10 + 18 = 28, never a total
commit T1
