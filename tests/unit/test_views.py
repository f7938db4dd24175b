from pgha_lab.probes import Member
from pgha_lab.term.tables import MEMBER_COLUMNS, members_table


def test_members_table_keeps_patronictl_columns():
    assert MEMBER_COLUMNS == ["Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag", "Replay LSN", "Lag", "Tags"]
    text = members_table([
        Member("dbnode1", "192.168.56.10", "leader", "running", 1, tags={"failover_priority": 1}),
        Member("dbnode2", "192.168.56.20", "sync_standby", "streaming", 1, "0/3000060", 0, "0/3000060", 3 * 1024 * 1024),
    ], "18/main")
    lines = text.splitlines()
    assert "Cluster: 18/main" in lines[0]
    assert lines[1].split("|")[1].strip() == "Member"
    row = [c.strip() for c in lines[4].split("|")[1:-1]]
    assert row == ["dbnode2", "192.168.56.20", "Sync Standby", "streaming", "1", "0/3000060", "0", "0/3000060", "3", ""]
