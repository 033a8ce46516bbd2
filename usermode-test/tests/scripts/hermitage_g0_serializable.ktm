# Hermitage G0, write cycles, at serializable: as at read committed (hermitage_g0.ktm), the
# second writer of a key is refused at once. Neither transaction read anything, so nothing is
# validated at commit and both commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
put T1 test/1 11
put T2 test/1 12    # refused: T1 holds test/1
put T1 test/2 21
commit T1
put T2 test/2 22    # T1 is done with test/2; T2 read nothing, so nothing went stale
commit T2
get - test/1        # T1's
get - test/2        # T2's, written after T1 committed
