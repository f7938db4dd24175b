from pgha_lab.roles import refused


def test_patronis_status_unknown_is_no_refusal_but_its_failed_and_conflicts_are():
    # Patroni 4.1's api.py: 503 '<Action> status unknown' once it stops polling an accepted request.
    assert not refused(200, "Successfully switched over to \"dbnode2\"")
    assert not refused(503, "Switchover status unknown")
    assert not refused(503, "Failover status unknown")
    assert refused(503, "Switchover failed")
    assert refused(412, "candidate name does not match with sync_standby")
    assert refused(400, "Failover could be performed only to a specific candidate")
