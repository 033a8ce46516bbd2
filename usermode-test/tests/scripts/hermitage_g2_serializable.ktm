# Hermitage G2, anti-dependency cycle over a predicate, at serializable: each lists the keys
# and inserts a new one. T1's insert lands in the range T2 listed (a phantom for T2), so T2
# cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
list T1 test/
list T2 test/
put T1 test/3 30
put T2 test/4 42
commit T1           # inserts into the range T2 listed: T2 is doomed
commit T2           # votes no: aborted
list - test/
