# Hermitage PMP, predicate-many-preceders: a LIST repeated in one transaction sees a key another
# transaction inserted and committed in between (a phantom).
put - test/1 10
put - test/2 20
begin T1
begin T2
list T1 test/
put T2 test/3 30
commit T2
list T1 test/       # read committed: the phantom test/3 appears
commit T1
