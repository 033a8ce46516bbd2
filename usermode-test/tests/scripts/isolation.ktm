# Reads, own writes and conflicts.
put - acct/a 100
put - acct/b 50
begin T1
put T1 acct/a 90
put T1 acct/new 1
delete T1 acct/b
get T1 acct/a    # own write
get - acct/a     # committed only
get T1 acct/b    # T1 deleted it
get - acct/b
list T1 acct/
list - acct/
begin T2
get T2 acct/a    # reads never block
put T2 acct/a 0  # write-write conflict
delete T2 acct/b # T1's key too
put - acct/a 7   # non-transacted
put T2 acct/c 3  # T2 still works
commit T2
commit T1
list - acct/
get - acct/a
get - acct/c
