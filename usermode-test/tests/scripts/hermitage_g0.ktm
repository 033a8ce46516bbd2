# Hermitage G0, write cycles: two transactions write the same two keys. Prevented at every
# level: the second writer of a key is refused at once (no waiting), so no two transactions'
# writes interleave on the same keys.
put - test/1 10
put - test/2 20
begin T1
begin T2
put T1 test/1 11
put T2 test/1 12    # refused: T1 holds test/1
put T1 test/2 21
commit T1
put T2 test/2 22    # T1 is done with test/2
commit T2
get - test/1        # T1's
get - test/2        # T2's, written after T1 committed
