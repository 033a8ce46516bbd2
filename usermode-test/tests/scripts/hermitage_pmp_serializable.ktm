# Hermitage PMP, predicate-many-preceders, at serializable: T2 inserts and commits a key in the
# range T1 listed. T1's second LIST still answers with committed data (the phantom appears),
# but T1 cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
list T1 test/
put T2 test/3 30
commit T2           # inserts into the range T1 listed: T1 is doomed
list T1 test/       # reads still answer: the phantom test/3 appears
commit T1           # votes no: aborted
