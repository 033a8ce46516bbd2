# Hermitage G2, anti-dependency cycle over a predicate: each lists the keys, sees the other's
# insert missing, and inserts its own.
put - test/1 10
put - test/2 20
begin T1
begin T2
list T1 test/
list T2 test/
put T1 test/3 30
put T2 test/4 42
commit T1
commit T2           # read committed: commits; each missed the other's insert
list - test/
