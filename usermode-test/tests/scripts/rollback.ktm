# Rollback discards writes and releases locks; an ended transaction answers NOT_ACTIVE.
put - k 1
begin T1
put T1 k 2
put T1 j 2
rollback T1
get - k
get - j
put - k 3                     # the lock is gone
get - k
put T1 k 4                    # T1 has ended
get T1 k
list T1 k
begin T2
put T2 k 5
commit T2
delete T2 k
commit T2
get - k
