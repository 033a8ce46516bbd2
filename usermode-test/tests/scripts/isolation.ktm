# Own writes are visible inside T only; a second writer conflicts at once and stays usable.
put - acct/a 100
put - acct/b 50
begin T1
put T1 acct/a 90
put T1 acct/new 1
delete T1 acct/b
get T1 acct/a                 # T1 sees its own write
get - acct/a                  # outside: committed only
get T1 acct/b                 # T1 deleted it
get - acct/b
list T1 acct/
list - acct/
begin T2
get T2 acct/a                 # reads never block or conflict
put T2 acct/a 0               # write-write conflict
delete T2 acct/b              # also T1's key
put - acct/a 7                # non-transacted write to a locked key
put T2 acct/c 3               # T2 is still active
commit T2
commit T1
list - acct/
get - acct/a
get - acct/c
